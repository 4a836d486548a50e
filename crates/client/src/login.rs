//! `grantwire login`: broker trust (like SSH's first connection), then password and TOTP code.

use std::io::{self, BufRead, IsTerminal as _, Write};
use std::path::Path;

use anyhow::Context as _;
use grantwire_client_core::time::format_unix_time;
use grantwire_client_core::tls::public_roots;
use grantwire_client_core::{
    BrokerClient, BrokerTrust, Error, Fingerprint, KnownBrokers, SessionStore,
};

use crate::cli::{totp_code, LoginArgs};
use crate::{print_json, Refused, UsageError};

pub async fn login(config_dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let known = KnownBrokers::new(config_dir);
    let pin = broker_pin(&known, &args).await?;
    let client = BrokerClient::new(&args.broker, pin)?;
    let (password, code) = read_credentials(&args)?;
    let session = client.login(&args.user, &password, &code).await?;
    if let (Some(fp), true) = (pin, args.fingerprint.is_some()) {
        // Remembered only now that the handshake with it succeeded: a mistyped fingerprint
        // never replaces a good one.
        if let Some(old) = known.trust(&args.broker, fp)? {
            eprintln!(
                "note: {} is now trusted by fingerprint {fp}, not {old}",
                args.broker
            );
        }
    }
    SessionStore::new(config_dir).save(&session)?;
    if args.json {
        print_json(&serde_json::json!({
            "user": session.user,
            "broker": session.broker_url,
            "expires_at": session.expires_at,
        }))?;
    } else {
        eprintln!(
            "logged in as {} until {}",
            session.user,
            format_unix_time(session.expires_at)
        );
    }
    Ok(())
}

/// The fingerprint to pin the broker by, or none for a CA-signed broker.
///
/// `--fingerprint` is the person vouching for it. Otherwise one handshake learns what the
/// broker presents: a fingerprint this device already trusts is used, and a different
/// certificate is refused before any secret is sent, naming both, even when a CA signed it;
/// otherwise a CA-signed certificate needs nothing, and an unknown one is shown and accepted
/// only by a person at a terminal, then remembered.
async fn broker_pin(known: &KnownBrokers, args: &LoginArgs) -> anyhow::Result<Option<Fingerprint>> {
    // Read first even when --fingerprint is given: a file this client cannot read (damaged, or
    // a newer client's) is refused before the password is sent, not after the broker made a
    // session that could then not be remembered.
    let known_fp = known.get(&args.broker)?;
    if let Some(fp) = args.fingerprint {
        return Ok(Some(fp));
    }
    // A broker known by fingerprint stays pinned to it, even behind a CA-signed certificate.
    let presented = match BrokerClient::trust_for_login(known, &args.broker, public_roots()).await?
    {
        BrokerTrust::CaSigned => return Ok(None),
        BrokerTrust::Fingerprint(fp) => fp,
    };
    if known_fp.is_some() {
        return Ok(Some(presented));
    }
    let Some((mut input, mut output)) = open_terminal() else {
        return Err(Error::UnknownBroker {
            broker: args.broker.clone(),
            fingerprint: presented,
        }
        .into());
    };
    if !ask_to_trust(&mut input, &mut output, &args.broker, presented)? {
        return Err(Refused(format!(
            "broker {} not trusted: nothing was sent to it (its fingerprint is {presented})",
            args.broker
        ))
        .into());
    }
    known.trust(&args.broker, presented)?;
    eprintln!("{} is now trusted by fingerprint {presented}", args.broker);
    Ok(Some(presented))
}

/// Shows the fingerprint and asks, as SSH does on a first connection. Only `yes` (or `y`)
/// trusts; anything else, end of input included, does not.
pub fn ask_to_trust(
    input: &mut impl BufRead,
    output: &mut impl Write,
    broker: &str,
    fingerprint: Fingerprint,
) -> anyhow::Result<bool> {
    write!(
        output,
        "The broker {broker} has a certificate that no public CA signed.\n\
         Its SHA-256 fingerprint is\n    {fingerprint}\n\
         Compare it with the one the broker printed at start (also in \
         <data-dir>/tls-cert.sha256).\n\
         Trust this broker from now on? [yes/no]: "
    )
    .and_then(|()| output.flush())
    .context("cannot ask on the terminal")?;
    let answer = read_line(input)?.unwrap_or_default();
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "yes" | "y"
    ))
}

/// The controlling terminal, when a person is at one: stderr goes to a terminal (so a script
/// capturing it is never asked) and `/dev/tty` opens. The question goes to the terminal, not
/// stdin, which may carry the password. A reading and a writing handle of it.
fn open_terminal() -> Option<(io::BufReader<std::fs::File>, std::fs::File)> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let reader = tty.try_clone().ok()?;
    Some((io::BufReader::new(reader), tty))
}

/// The password from stdin's first line or the terminal (no echo), then the TOTP code from
/// `--totp` or the next line of stdin (typed at a prompt, or piped after the password).
fn read_credentials(args: &LoginArgs) -> anyhow::Result<(String, String)> {
    let mut stdin = io::stdin().lock();
    let password = if args.password_stdin {
        read_line(&mut stdin)?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| UsageError("--password-stdin: no password on stdin".into()))?
    } else {
        rpassword::prompt_password(format!("Password for {}: ", args.user))
            .context("cannot ask for the password on the terminal; use --password-stdin")?
    };
    let code = match &args.totp {
        Some(code) => code.clone(),
        None => {
            eprint!("TOTP code: ");
            let typed = read_line(&mut stdin)?
                .ok_or_else(|| UsageError("no TOTP code: pass --totp CODE".into()))?;
            totp_code(&typed).map_err(UsageError)?
        }
    };
    Ok((password, code))
}

/// One line without its line ending; `None` at end of input.
pub fn read_line(input: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line).context("cannot read stdin")? == 0 {
        return Ok(None);
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_strips_line_endings() {
        let mut input = io::Cursor::new("pw with spaces \r\n654321\n");
        assert_eq!(read_line(&mut input).unwrap().unwrap(), "pw with spaces ");
        assert_eq!(read_line(&mut input).unwrap().unwrap(), "654321");
        assert_eq!(read_line(&mut input).unwrap(), None);
    }

    #[test]
    fn only_yes_trusts_and_the_question_shows_the_fingerprint() {
        let fp = Fingerprint::of_der(b"cert");
        for (answer, trusted) in [
            ("yes\n", true),
            ("Y\n", true),
            (" yes \r\n", true),
            ("no\n", false),
            ("yess\n", false),
            ("\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let got = ask_to_trust(
                &mut io::Cursor::new(answer),
                &mut out,
                "https://b.example/",
                fp,
            )
            .unwrap();
            assert_eq!(got, trusted, "{answer:?}");
            let asked = String::from_utf8(out).unwrap();
            assert!(asked.contains(&fp.to_string()), "{asked}");
            assert!(asked.contains("https://b.example/"), "{asked}");
        }
    }
}
