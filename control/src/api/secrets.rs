//! `/v1/secrets`: write-only values; responses carry the masked preview.

use hyper::{Method, StatusCode};
use onecli_policy::model::{InjectionDoc, InjectionFields, InjectionFieldsError, SecretKind};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::{json_response, no_content, not_found, ok, success, Api, ApiError, ApiResult, Call};
use crate::store::{SecretInput, SecretRecord};

/// COMPAT's `injectionConfig`: a header with a format, a query parameter,
/// the path (`pathTemplate`, or `pathRegex` with `pathReplacement`), or an
/// AWS key pair (`accessKeyId` and the write-only `sessionToken`).
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InjectionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    param_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    param_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    /// Never shown: sealed with the secret access key.
    #[serde(skip_serializing)]
    session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for InjectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectionConfig")
            .field("header_name", &self.header_name)
            .field("param_name", &self.param_name)
            .field("path_template", &self.path_template)
            .field("path_regex", &self.path_regex)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl InjectionConfig {
    fn into_doc(self) -> Result<Option<InjectionDoc>, ApiError> {
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return Err(ApiError::BadRequest(
                "injectionConfig: sessionToken goes with accessKeyId.".into(),
            ));
        }
        let fields = InjectionFields {
            header_name: self.header_name,
            value_format: self.value_format,
            param_name: self.param_name,
            param_format: self.param_format,
            path_template: self.path_template,
            path_regex: self.path_regex,
            path_replacement: self.path_replacement,
            access_key_id: self.access_key_id,
        };
        fields.into_doc().map_err(|e| {
            ApiError::BadRequest(
                match e {
                    InjectionFieldsError::HalfARegex => {
                        "injectionConfig: pathRegex and pathReplacement go together."
                    }
                    InjectionFieldsError::SeveralWays => {
                        "injectionConfig takes one of headerName, paramName, pathTemplate, pathRegex and accessKeyId."
                    }
                }
                .into(),
            )
        })
    }

    fn from_doc(doc: &InjectionDoc) -> Self {
        match doc {
            InjectionDoc::Header { name, format } => InjectionConfig {
                header_name: Some(name.clone()),
                value_format: Some(format.clone()),
                ..Self::default()
            },
            InjectionDoc::Query { name, format } => InjectionConfig {
                param_name: Some(name.clone()),
                param_format: Some(format.clone()),
                ..Self::default()
            },
            InjectionDoc::PathTemplate { template } => InjectionConfig {
                path_template: Some(template.clone()),
                ..Self::default()
            },
            InjectionDoc::PathRegex {
                pattern,
                replacement,
            } => InjectionConfig {
                path_regex: Some(pattern.clone()),
                path_replacement: Some(replacement.clone()),
                ..Self::default()
            },
            InjectionDoc::Aws { access_key_id } => InjectionConfig {
                access_key_id: Some(access_key_id.clone()),
                ..Self::default()
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretView {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: SecretKind,
    host_pattern: String,
    path_pattern: String,
    injection_config: Option<InjectionConfig>,
    allow_plaintext: bool,
    created_at: String,
    preview: String,
}

fn view(s: SecretRecord) -> SecretView {
    SecretView {
        injection_config: s.injection.as_ref().map(InjectionConfig::from_doc),
        id: s.id,
        name: s.name,
        kind: s.kind,
        host_pattern: s.host_pattern,
        path_pattern: s.path_pattern,
        allow_plaintext: s.allow_plaintext,
        created_at: s.created_at,
        preview: s.preview,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretBody {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<SecretKind>,
    value: Option<Zeroizing<String>>,
    host_pattern: Option<String>,
    path_pattern: Option<String>,
    /// Absent: unchanged; `null`: none.
    #[serde(default, deserialize_with = "present")]
    injection_config: Option<Option<InjectionConfig>>,
    /// Also inject into plain HTTP (never port 443); default false.
    allow_plaintext: Option<bool>,
}

/// Tells a field set to `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl SecretBody {
    fn into_input(self) -> Result<SecretInput, ApiError> {
        let mut session_token = None;
        let injection = match self.injection_config {
            None => None,
            Some(None) => Some(None),
            Some(Some(mut config)) => {
                session_token = Some(config.session_token.take());
                Some(config.into_doc()?)
            }
        };
        Ok(SecretInput {
            name: self.name.map(|n| n.trim().to_owned()),
            kind: self.kind,
            value: self.value,
            host_pattern: self.host_pattern,
            path_pattern: self.path_pattern,
            injection,
            allow_plaintext: self.allow_plaintext,
            session_token,
        })
    }
}

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["secrets"]) => ok(&api
            .read(&call.scope, |s| {
                Ok(s.secrets()?.into_iter().map(view).collect::<Vec<_>>())
            })
            .await?),
        (&Method::POST, ["secrets"]) => {
            let input = call.json::<SecretBody>()?.into_input()?;
            let s = api
                .write(&call.scope, move |store| store.create_secret(input))
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "id": s.id, "name": s.name, "type": s.kind, "hostPattern": s.host_pattern,
                    "pathPattern": s.path_pattern, "allowPlaintext": s.allow_plaintext,
                    "createdAt": s.created_at, "preview": s.preview,
                }),
            ))
        }
        (&Method::GET, ["secrets", id]) => {
            let id = id.to_string();
            ok(&view(api.read(&call.scope, move |s| s.secret(&id)).await?))
        }
        (&Method::PATCH, ["secrets", id]) => {
            let input = call.json::<SecretBody>()?.into_input()?;
            let id = id.to_string();
            api.write(&call.scope, move |s| s.update_secret(&id, input))
                .await?;
            success()
        }
        (&Method::DELETE, ["secrets", id]) => {
            let id = id.to_string();
            api.write(&call.scope, move |s| s.delete_secret(&id))
                .await?;
            no_content()
        }
        _ => Err(not_found(call)),
    }
}

/// The fuzz target's way in: a body parsed and checked as `POST` does,
/// then compiled as a gateway would.
pub(crate) fn fuzz_body(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<SecretBody>(data) else {
        return;
    };
    let Ok(input) = body.into_input() else {
        return;
    };
    if let (Some(name), Some(kind), Some(value), Some(host)) =
        (input.name, input.kind, input.value, input.host_pattern)
    {
        let doc = onecli_policy::PolicyDoc {
            secrets: vec![onecli_policy::model::SecretDoc {
                id: "s".into(),
                project: onecli_policy::model::default_project(),
                name,
                kind,
                value,
                host_pattern: host,
                path_pattern: input.path_pattern.unwrap_or_else(|| "*".into()),
                injection: input.injection.flatten(),
                allow_plaintext: input.allow_plaintext.unwrap_or(false),
            }],
            ..Default::default()
        };
        let _ = onecli_policy::Snapshot::compile(doc);
    }
}
