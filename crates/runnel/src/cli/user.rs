//! `runnel user create|list|delete`: SCRAM users (DescribeUserScramCredentials and
//! AlterUserScramCredentials, KIP-554). The client computes the salted password (PBKDF2)
//! and sends only that and the salt; the broker stores the derived keys.
//!
//! librdkafka's own calls for these APIs need it built with OpenSSL, which ours is not:
//! so this command sends its two requests through `raw` over one plaintext connection to
//! the first reachable broker (the loopback PLAINTEXT listener an operator creates the
//! first users through).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use runnel_broker::auth::scram::{random_bytes, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use serde::Serialize;

use super::client::ClientArgs;
use super::output::{emit, Table};
use super::raw;

#[derive(Args)]
pub struct UserCmd {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: UserSub,
}

#[derive(Subcommand)]
enum UserSub {
    /// Create a SCRAM user, or set its password (the password is read from a file)
    Create {
        /// The user name (its principal is User:NAME)
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// File holding the password (its first line); "-" reads stdin
        #[arg(long)]
        password_file: PathBuf,
        /// PBKDF2 iterations (4096 to 16384)
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// List the SCRAM users and their mechanisms
    List,
    /// Delete a user's SCRAM credentials (every mechanism unless --mechanism)
    Delete {
        name: String,
        /// Only this mechanism's credential
        #[arg(long)]
        mechanism: Option<String>,
    },
}

#[derive(Serialize)]
struct UserRow {
    user: String,
    mechanism: String,
    iterations: i32,
}

pub fn run(cmd: UserCmd) -> Result<()> {
    let args = &cmd.client;
    let mut conn = raw::bootstrap(args)?;
    match cmd.cmd {
        UserSub::Create { name, mechanism, password_file, iterations } => {
            let mech = mechanism_arg(&mechanism)?;
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                bail!("--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, got {iterations}");
            }
            let password = read_password(&password_file)?;
            let salt = random_bytes(32);
            let salted = mech.salted_password(password.as_bytes(), &salt, iterations as u32);
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_mechanism(mech.code())
                .with_iterations(iterations)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted))]);
            alter(&mut conn, req)?;
            eprintln!("user {name}: {} credential set", mech.name());
        }
        UserSub::Delete { name, mechanism } => {
            let mechs = match mechanism {
                Some(m) => vec![mechanism_arg(&m)?],
                None => {
                    let have = describe(&mut conn)?;
                    let mechs: Vec<ScramMechanism> = have.iter().filter(|r| r.user == name).filter_map(|r| ScramMechanism::from_name(&r.mechanism)).collect();
                    if mechs.is_empty() {
                        bail!("user {name} has no SCRAM credentials (see `runnel user list`)");
                    }
                    mechs
                }
            };
            let deletions = mechs
                .iter()
                .map(|m| ScramCredentialDeletion::default().with_name(StrBytes::from_string(name.clone())).with_mechanism(m.code()))
                .collect();
            alter(&mut conn, AlterUserScramCredentialsRequest::default().with_deletions(deletions))?;
            eprintln!("user {name}: deleted");
        }
        UserSub::List => {
            let rows = describe(&mut conn)?;
            let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
            for r in &rows {
                table.row(vec![r.user.clone(), r.mechanism.clone(), r.iterations.to_string()]);
            }
            emit(args.json, &rows, |_| table.render())?;
        }
    }
    Ok(())
}

fn mechanism_arg(s: &str) -> Result<ScramMechanism> {
    ScramMechanism::from_name(&s.to_ascii_uppercase()).ok_or_else(|| anyhow!("--mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512, got '{s}'"))
}

fn read_password(path: &PathBuf) -> Result<String> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the password from stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the password file {}", path.display()))?
    };
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!("the password file {} is empty", path.display());
    }
    Ok(password)
}

fn alter(conn: &mut raw::Conn, req: AlterUserScramCredentialsRequest) -> Result<()> {
    let resp = conn.send(req)?;
    for r in resp.results {
        if r.error_code != 0 {
            bail!("user {}: {}: {}", r.user.as_str(), raw::error_name(r.error_code), r.error_message.as_deref().unwrap_or(""));
        }
    }
    Ok(())
}

fn describe(conn: &mut raw::Conn) -> Result<Vec<UserRow>> {
    let resp = conn.send(DescribeUserScramCredentialsRequest::default().with_users(None::<Vec<UserName>>))?;
    if resp.error_code != 0 {
        bail!("DescribeUserScramCredentials: {}: {}", raw::error_name(resp.error_code), resp.error_message.as_deref().unwrap_or(""));
    }
    let mut rows = Vec::new();
    for r in resp.results {
        for c in r.credential_infos {
            let mechanism = ScramMechanism::from_code(c.mechanism).map_or(format!("unknown ({})", c.mechanism), |m| m.name().to_string());
            rows.push(UserRow { user: r.user.to_string(), mechanism, iterations: c.iterations });
        }
    }
    Ok(rows)
}
