//! Credentials with more than one part, kept as one sealed value: an AWS
//! key pair and a ChatGPT (Codex) login. What the gateway needs of each, and
//! what an agent may hold in their place.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// An AWS secret access key and, for temporary credentials, the session
/// token that goes with it. Stored as one value: the key, then the token
/// after a newline (neither may contain whitespace).
pub struct AwsKey<'a> {
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl<'a> AwsKey<'a> {
    pub fn split(value: &'a str) -> AwsKey<'a> {
        match value.split_once('\n') {
            Some((key, token)) => AwsKey {
                secret_access_key: key,
                session_token: Some(token).filter(|t| !t.is_empty()),
            },
            None => AwsKey {
                secret_access_key: value,
                session_token: None,
            },
        }
    }

    /// The stored form of a key and its token, checked.
    pub fn join(
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Result<Zeroizing<String>, String> {
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(secret_access_key) {
            return Err("an AWS secret access key is printable ASCII without spaces".into());
        }
        let mut out = Zeroizing::new(secret_access_key.to_owned());
        if let Some(token) = session_token {
            if !printable(token) {
                return Err("an AWS session token is printable ASCII without spaces".into());
            }
            out.push('\n');
            out.push_str(token);
        }
        Ok(out)
    }
}

/// What lists show of a stored value: at most the last four characters of
/// the key (an AWS secret key's, not its session token's); a ChatGPT login
/// by its account.
pub fn preview(kind: crate::model::SecretKind, value: &str) -> String {
    use crate::model::SecretKind;
    match kind {
        SecretKind::Aws => {
            crate::SecretValue::new(AwsKey::split(value).secret_access_key.to_owned()).preview()
        }
        SecretKind::Openai if is_chatgpt_login(value) => match ChatgptLogin::parse(value) {
            Ok(login) => format!("ChatGPT login, account {}", login.account_id),
            Err(_) => "ChatGPT login".to_owned(),
        },
        _ => crate::SecretValue::new(value.to_owned()).preview(),
    }
}

/// An AWS access key id: upper-case letters and digits (`AKIA…`, `ASIA…`).
pub fn is_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The refresh token an agent holds instead of the real one: the gateway
/// answers a refresh with it itself, and the control service refreshes the
/// real token.
pub const MANAGED_REFRESH_TOKEN: &str = "onecli-managed-refresh-token";
/// Where Codex refreshes a ChatGPT login.
pub const CHATGPT_TOKEN_HOST: &str = "auth.openai.com";
pub const CHATGPT_TOKEN_PATH: &str = "/oauth/token";
/// The client id Codex refreshes its login as.
pub const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// Far enough ahead that an agent never refreshes a placeholder for expiry
/// (2100-01-01); the gateway answers it anyway if it does.
const PLACEHOLDER_EXP: u64 = 4_102_444_800;
const AUTH_CLAIM: &str = "https://api.openai.com/auth";

/// A ChatGPT login as Codex keeps it in `auth.json`.
pub struct ChatgptLogin {
    pub access_token: Zeroizing<String>,
    /// Empty in what gateways get: only the control service refreshes.
    pub refresh_token: Zeroizing<String>,
    pub id_token: Zeroizing<String>,
    pub account_id: String,
    /// RFC 3339, when the tokens were last refreshed.
    pub last_refresh: Option<String>,
}

impl std::fmt::Debug for ChatgptLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatgptLogin")
            .field("account_id", &self.account_id)
            .field("last_refresh", &self.last_refresh)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Serialize)]
struct AuthJson {
    #[serde(rename = "OPENAI_API_KEY", default)]
    openai_api_key: Option<serde_json::Value>,
    tokens: Tokens,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_refresh: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct Tokens {
    #[serde(default)]
    id_token: String,
    access_token: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.id_token.zeroize();
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

/// A value holds a ChatGPT login (Codex's `auth.json`) rather than an API key.
pub fn is_chatgpt_login(value: &str) -> bool {
    value.trim_start().starts_with('{')
}

impl ChatgptLogin {
    /// Reads Codex's `auth.json`. Errors never quote the text.
    pub fn parse(text: &str) -> Result<ChatgptLogin, String> {
        let auth: AuthJson = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a Codex auth.json (line {}, column {}): it needs tokens.access_token, tokens.refresh_token and an account id",
                e.line(),
                e.column()
            )
        })?;
        let tokens = &auth.tokens;
        let token_ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic());
        if !token_ok(&tokens.access_token) {
            return Err("auth.json: tokens.access_token is missing or not a token".into());
        }
        if !tokens.refresh_token.is_empty() && !token_ok(&tokens.refresh_token) {
            return Err("auth.json: tokens.refresh_token is not a token".into());
        }
        let account_id = tokens
            .account_id
            .clone()
            .or_else(|| {
                jwt_claims(&tokens.id_token).and_then(|c| {
                    c.get(AUTH_CLAIM)?
                        .get("chatgpt_account_id")?
                        .as_str()
                        .map(str::to_owned)
                })
            })
            .ok_or("auth.json: no account id (tokens.account_id)")?;
        if account_id.is_empty()
            || !account_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("auth.json: the account id is not an id".into());
        }
        Ok(ChatgptLogin {
            access_token: Zeroizing::new(tokens.access_token.clone()),
            refresh_token: Zeroizing::new(tokens.refresh_token.clone()),
            id_token: Zeroizing::new(tokens.id_token.clone()),
            account_id,
            last_refresh: auth.last_refresh.clone(),
        })
    }

    /// Codex's `auth.json` for this login.
    pub fn to_json(&self) -> Zeroizing<String> {
        let auth = AuthJson {
            openai_api_key: None,
            tokens: Tokens {
                id_token: self.id_token.to_string(),
                access_token: self.access_token.to_string(),
                refresh_token: self.refresh_token.to_string(),
                account_id: Some(self.account_id.clone()),
            },
            last_refresh: self.last_refresh.clone(),
        };
        Zeroizing::new(serde_json::to_string(&auth).unwrap_or_default())
    }

    /// What a gateway needs: everything but the refresh token.
    pub fn for_gateway(&self) -> Zeroizing<String> {
        ChatgptLogin {
            access_token: self.access_token.clone(),
            refresh_token: Zeroizing::new(String::new()),
            id_token: self.id_token.clone(),
            account_id: self.account_id.clone(),
            last_refresh: self.last_refresh.clone(),
        }
        .to_json()
    }

    /// When the access token expires (its `exp`, Unix seconds), if it says.
    pub fn access_expires_at(&self) -> Option<u64> {
        jwt_claims(&self.access_token)?.get("exp")?.as_u64()
    }

    /// The tokens an agent holds: unsigned look-alikes with the login's
    /// account and plan, which no service accepts, and the managed refresh
    /// token. (access_token, id_token, refresh_token)
    pub fn placeholder_tokens(&self) -> (String, String, &'static str) {
        let claims = jwt_claims(&self.id_token).unwrap_or_default();
        let plan = claims
            .get(AUTH_CLAIM)
            .and_then(|a| a.get("chatgpt_plan_type"))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let email = claims
            .get("email")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let auth =
            serde_json::json!({ "chatgpt_account_id": self.account_id, "chatgpt_plan_type": plan });
        let id = unsigned_jwt(&serde_json::json!({
            "iss": "onecli", "aud": CODEX_CLIENT_ID, "email": email, "exp": PLACEHOLDER_EXP,
            AUTH_CLAIM: auth,
        }));
        let access = unsigned_jwt(&serde_json::json!({
            "iss": "onecli", "exp": PLACEHOLDER_EXP, AUTH_CLAIM: { "chatgpt_account_id": self.account_id },
        }));
        (access, id, MANAGED_REFRESH_TOKEN)
    }

    /// What the gateway answers an agent's refresh with: the placeholder
    /// tokens again, as the token endpoint would put them.
    pub fn refresh_answer(&self) -> String {
        let (access, id, refresh) = self.placeholder_tokens();
        serde_json::json!({
            "access_token": access, "id_token": id, "refresh_token": refresh,
            "token_type": "Bearer", "expires_in": 864_000,
        })
        .to_string()
    }

    /// The `auth.json` an agent holds: the placeholder tokens.
    pub fn placeholder_auth_json(&self) -> String {
        let (access, id, refresh) = self.placeholder_tokens();
        serde_json::json!({
            "OPENAI_API_KEY": null,
            "tokens": { "id_token": id, "access_token": access, "refresh_token": refresh, "account_id": self.account_id },
            "last_refresh": self.last_refresh.clone().unwrap_or_else(|| "2025-01-01T00:00:00Z".into()),
        })
        .to_string()
    }
}

/// The claims of a JWT, unverified: for expiry and display only.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unsigned_jwt(claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"onecli-placeholder")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        unsigned_jwt(&claims)
    }

    fn auth_json(access: &str, refresh: &str) -> String {
        let id = jwt(serde_json::json!({ "email": "dev@example.com",
            AUTH_CLAIM: { "chatgpt_plan_type": "pro", "chatgpt_account_id": "acct-1" } }));
        serde_json::json!({ "OPENAI_API_KEY": null,
            "tokens": { "id_token": id, "access_token": access, "refresh_token": refresh },
            "last_refresh": "2026-11-30T10:00:00Z" })
        .to_string()
    }

    #[test]
    fn aws_keys_keep_their_session_token_after_a_newline() {
        let joined = AwsKey::join(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("FwoG+token/x="),
        )
        .expect("join");
        let key = AwsKey::split(&joined);
        assert_eq!(
            key.secret_access_key,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(key.session_token, Some("FwoG+token/x="));
        assert!(AwsKey::split("only-a-key").session_token.is_none());
        assert!(AwsKey::join("has space", None).is_err());
        assert!(AwsKey::join("key", Some("two\nlines")).is_err());
        assert!(is_access_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(!is_access_key_id("akia-lower"));
    }

    #[test]
    fn a_codex_login_is_read_and_its_account_found_in_the_id_token() {
        let access = jwt(serde_json::json!({ "exp": 1_900_000_000u64 }));
        let login = ChatgptLogin::parse(&auth_json(&access, "rt-real")).expect("parse");
        assert_eq!(login.account_id, "acct-1");
        assert_eq!(login.access_expires_at(), Some(1_900_000_000));
        assert_eq!(&*login.refresh_token, "rt-real");
        // Round trip, and gateways never get the refresh token.
        let again = ChatgptLogin::parse(&login.to_json()).expect("again");
        assert_eq!(&*again.access_token, &*access);
        let gateway = ChatgptLogin::parse(&login.for_gateway()).expect("gateway");
        assert!(gateway.refresh_token.is_empty());
        // Errors never quote the text.
        let err = ChatgptLogin::parse(r#"{"tokens":{"access_token":"secret value"}}"#)
            .expect_err("refused");
        assert!(!err.contains("secret"), "{err}");
        assert!(ChatgptLogin::parse("{not json sk-secret")
            .expect_err("refused")
            .contains("line"));
    }

    #[test]
    fn the_placeholder_login_keeps_account_and_plan_and_no_token() {
        let access = jwt(serde_json::json!({ "exp": 1_900_000_000u64 }));
        let login = ChatgptLogin::parse(&auth_json(&access, "rt-real")).expect("parse");
        let placeholder = login.placeholder_auth_json();
        assert!(!placeholder.contains("rt-real") && !placeholder.contains(&*access));
        let held = ChatgptLogin::parse(&placeholder).expect("placeholder parses as a login");
        assert_eq!(&*held.refresh_token, MANAGED_REFRESH_TOKEN);
        assert_eq!(held.account_id, "acct-1");
        let claims = jwt_claims(&held.id_token).expect("claims");
        assert_eq!(claims[AUTH_CLAIM]["chatgpt_plan_type"], "pro");
        assert_eq!(claims["email"], "dev@example.com");
        assert_eq!(held.access_expires_at(), Some(PLACEHOLDER_EXP));
    }
}
