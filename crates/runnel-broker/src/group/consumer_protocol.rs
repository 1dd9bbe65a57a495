//! Reads the topic list out of a consumer's subscription (the JoinGroup protocol metadata
//! of protocol type "consumer": `version i16, topics [string], …`). Only what the
//! coordinator needs (OffsetDelete refuses topics a live group subscribes to); every
//! length is checked against the bytes present, so any input is safe.

/// The subscribed topics, or `None` if the bytes are not a consumer subscription.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let end = at.checked_add(n).filter(|&e| e <= metadata.len())?;
        let s = &metadata[at..end];
        at = end;
        Some(s)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    if count < 0 || count as usize > metadata.len() {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        if len < 0 {
            return None;
        }
        topics.push(String::from_utf8(take(len as usize)?.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topics_and_refuses_garbage() {
        let mut b = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0xff, 0xff];
        assert_eq!(subscription_topics(&b), Some(vec!["a".into(), "bc".into()]));
        b[5] = 9;
        assert_eq!(subscription_topics(&b), None);
        assert_eq!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscription_topics(&[]), None);
    }
}
