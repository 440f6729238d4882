//! The standard OpenTelemetry environment variables (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`) as a
//! configuration layer: above the built-in defaults, below the config file, `PIPETRACE_*`
//! variables and flags. Signal-specific (`_TRACES_`) variables win over the generic ones.

use figment::providers::Serialized;
use serde_json::{Map, Value, json};

/// `k1=v1,k2=v2` with percent-encoded values (W3C baggage style), as the spec defines for
/// headers and resource attributes.
pub fn parse_pairs(text: &str, var: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "environment {var}: {item:?} is not key=value (expected k1=v1,k2=v2)"
            ));
        };
        let key = percent_decode(k.trim());
        if key.is_empty() {
            return Err(format!("environment {var}: empty key in {item:?}"));
        }
        out.insert(key, Value::String(percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn millis(var: &str, value: &str) -> Result<String, String> {
    value
        .trim()
        .parse::<u64>()
        .map(|ms| format!("{ms}ms"))
        .map_err(|_| format!("environment {var}: {value:?} is not a number of milliseconds"))
}

fn count(var: &str, value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "environment {var}: {value:?} is not a positive integer"
        )),
    }
}

/// The layer, or a one-line error naming the variable.
pub fn layer(env: &impl Fn(&str) -> Option<String>) -> Result<Serialized<Value>, String> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // The traces-specific variable, else the generic one; with the name that supplied it.
    let pick = |suffix: &str| {
        let specific = format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}");
        let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
        get(&specific)
            .map(|v| (specific, v))
            .or_else(|| get(&generic).map(|v| (generic, v)))
    };
    let mut otlp = Map::new();
    if let Some((var, url)) = pick("ENDPOINT") {
        let url = url.trim().to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "environment {var}: {url:?} is not a URL; expected http://HOST:PORT or https://HOST:PORT"
            ));
        }
        otlp.insert("endpoint".into(), json!(url));
    }
    if let Some((var, protocol)) = pick("PROTOCOL") {
        let protocol = match protocol.trim() {
            "grpc" => "grpc",
            "http/protobuf" => "http/protobuf",
            other => {
                return Err(format!(
                    "environment {var}: protocol {other:?} is not supported; use grpc or http/protobuf"
                ));
            }
        };
        otlp.insert("protocol".into(), json!(protocol));
    }
    if let Some((var, headers)) = pick("HEADERS") {
        otlp.insert(
            "headers".into(),
            Value::Object(parse_pairs(&headers, &var)?),
        );
    }
    if let Some((var, ms)) = pick("TIMEOUT") {
        otlp.insert("timeout".into(), json!(millis(&var, &ms)?));
    }
    let mut tls = Map::new();
    for (suffix, key) in [
        ("CERTIFICATE", "ca_file"),
        ("CLIENT_CERTIFICATE", "cert_file"),
        ("CLIENT_KEY", "key_file"),
    ] {
        if let Some((_, path)) = pick(suffix) {
            tls.insert(key.into(), json!(path.trim()));
        }
    }
    if !tls.is_empty() {
        otlp.insert("tls".into(), Value::Object(tls));
    }
    if let Some(name) = get("OTEL_SERVICE_NAME") {
        otlp.insert("service_name".into(), json!(name.trim()));
    }
    if let Some(attrs) = get("OTEL_RESOURCE_ATTRIBUTES") {
        let mut attrs = parse_pairs(&attrs, "OTEL_RESOURCE_ATTRIBUTES")?;
        // service.name set here is the service name unless OTEL_SERVICE_NAME says otherwise.
        if let Some(Value::String(name)) = attrs.remove("service.name")
            && !otlp.contains_key("service_name")
        {
            otlp.insert("service_name".into(), json!(name));
        }
        otlp.insert("resource_attributes".into(), Value::Object(attrs));
    }
    for (var, key) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "max_queue_spans"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "max_batch_spans"),
    ] {
        if let Some(v) = get(var) {
            otlp.insert(key.into(), json!(count(var, &v)?));
        }
    }
    if let Some(v) = get("OTEL_BSP_SCHEDULE_DELAY") {
        otlp.insert(
            "batch_delay".into(),
            json!(millis("OTEL_BSP_SCHEDULE_DELAY", &v)?),
        );
    }
    if let Some(v) = get("OTEL_METRIC_EXPORT_INTERVAL") {
        otlp.insert(
            "metrics_interval".into(),
            json!(millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?),
        );
    }
    if get("OTEL_METRICS_EXPORTER").is_some_and(|v| v.trim() == "none") {
        otlp.insert("metrics".into(), json!(false));
    }
    let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
    if disabled {
        otlp.insert("endpoint".into(), json!(""));
    }
    Ok(Serialized::defaults(json!({ "otlp": otlp })))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, OtlpProtocol, Overrides};
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(None, Overrides::default(), |k| map.get(k).cloned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn standard_variables_configure_the_exporter() {
        let c = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%2Cb,x-team = ci "),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "builds"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=ci,service.name=ignored",
            ),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ])
        .unwrap();
        assert!(c.otlp.enabled());
        assert_eq!(c.otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.otlp.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(c.otlp.headers["api-key"], "a,b");
        assert_eq!(c.otlp.headers["x-team"], "ci");
        assert_eq!(c.otlp.timeout, std::time::Duration::from_millis(2500));
        assert_eq!(c.otlp.service_name, "builds");
        assert_eq!(c.otlp.resource_attributes["deployment.environment"], "ci");
        assert!(!c.otlp.resource_attributes.contains_key("service.name"));
        assert_eq!(c.otlp.max_queue_spans, 100);
    }

    #[test]
    fn traces_specific_variables_win_and_off_is_the_default() {
        assert!(!load(&[]).unwrap().otlp.enabled());
        let c = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
        ])
        .unwrap();
        assert_eq!(c.otlp.traces_url(), "http://b:4317");
        let off = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(!off.otlp.enabled());
    }

    #[test]
    fn bad_variables_are_named() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert!(err.contains(var), "{var}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn flags_and_file_override_the_standard_variables() {
        let map: HashMap<&str, &str> = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317")].into();
        let c = Config::load_with_env(
            None,
            Overrides::from_flags([("--otlp-endpoint", vec!["http://flag:4317".to_owned()])]),
            |k| map.get(k).map(|v| v.to_string()),
        )
        .unwrap();
        assert_eq!(c.otlp.endpoint, "http://flag:4317");
    }
}
