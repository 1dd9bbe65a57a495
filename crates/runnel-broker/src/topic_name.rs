//! Kafka's topic name rules.

/// Kafka's limit on topic name length.
pub const MAX_NAME_LEN: usize = 249;

/// Topic names that belong to Runnel itself and cannot be created by clients.
pub const RESERVED: &[&str] = &["__cluster_metadata"];

/// Checks a topic name as Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or
/// `..`. Returns why it is invalid.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "topic name is {} characters long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("topic name '{name}' is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn kafka_rules() {
        assert!(validate("orders.v1_EU-2").is_ok());
        assert!(validate("").is_err());
        assert!(validate(".").is_err());
        assert!(validate("..").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("ü").is_err());
        assert!(validate(&"x".repeat(249)).is_ok());
        assert!(validate(&"x".repeat(250)).is_err());
    }
}
