//! How the OTLP exporters reach the receiver: URL per signal, protocol, headers, timeout, TLS.
//! Shared by the trace sink and the metrics exporter.

use std::collections::HashMap;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::{
    config::{OtlpProtocol, OtlpSection, Signal},
    sinks::SinkError,
};

fn read_file(key: &str, path: &std::path::Path) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| SinkError::Config(format!("{key} {}: {e}", path.display())))
}

enum Wire {
    Grpc {
        metadata: tonic::metadata::MetadataMap,
        tls: Option<tonic::transport::ClientTlsConfig>,
    },
    Http {
        client: reqwest::Client,
        headers: HashMap<String, String>,
    },
}

/// Everything an exporter builder needs, checked once.
pub struct Transport {
    url: String,
    timeout: std::time::Duration,
    wire: Wire,
}

impl Transport {
    pub fn from_config(c: &OtlpSection, signal: Signal) -> Result<Self, SinkError> {
        let url = c.signal_url(signal);
        let tls = &c.tls;
        let ca = tls
            .ca_file
            .as_deref()
            .map(|p| read_file("otlp.tls.ca_file", p))
            .transpose()?;
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some((
                read_file("otlp.tls.cert_file", cert)?,
                read_file("otlp.tls.key_file", key)?,
            )),
            _ => None,
        };
        let wire = match c.protocol {
            OtlpProtocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &c.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(name.to_lowercase().as_bytes())
                            .map_err(|e| {
                                SinkError::Config(format!("otlp.headers {name:?}: {e}"))
                            })?;
                    let value = value
                        .parse()
                        .map_err(|e| SinkError::Config(format!("otlp.headers {name:?}: {e}")))?;
                    metadata.insert(key, value);
                }
                let tls = url.starts_with("https://").then(|| {
                    let mut config = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &ca {
                        config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
                    }
                    if let Some((cert, key)) = &identity {
                        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
                    }
                    config
                });
                Wire::Grpc { metadata, tls }
            }
            OtlpProtocol::HttpProtobuf => {
                // reqwest is built without a bundled crypto provider: use ring, like tonic.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut client = reqwest::Client::builder().timeout(c.timeout);
                if let Some(ca) = &ca {
                    for cert in reqwest::Certificate::from_pem_bundle(ca)
                        .map_err(|e| SinkError::Config(format!("otlp.tls.ca_file: {e}")))?
                    {
                        client = client.add_root_certificate(cert);
                    }
                }
                if let Some((cert, key)) = &identity {
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(key);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| SinkError::Config(format!("otlp.tls.cert_file: {e}")))?;
                    client = client.identity(id);
                }
                let client = client
                    .build()
                    .map_err(|e| SinkError::Config(format!("otlp.endpoint {url}: {e}")))?;
                Wire::Http {
                    client,
                    headers: c.headers.clone().into_iter().collect(),
                }
            }
        };
        Ok(Self {
            url,
            timeout: c.timeout,
            wire,
        })
    }

    fn bad(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Config(format!("otlp.endpoint {}: {e}", self.url))
    }

    fn grpc<B: WithExportConfig + WithTonicConfig>(&self, builder: B) -> B {
        let builder = builder
            .with_endpoint(self.url.clone())
            .with_timeout(self.timeout);
        match &self.wire {
            Wire::Grpc { metadata, tls } => {
                let builder = builder.with_metadata(metadata.clone());
                match tls {
                    Some(tls) => builder.with_tls_config(tls.clone()),
                    None => builder,
                }
            }
            Wire::Http { .. } => builder,
        }
    }

    fn http<B: WithExportConfig + WithHttpConfig>(&self, builder: B) -> B {
        let builder = builder
            .with_endpoint(self.url.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(self.timeout);
        match &self.wire {
            Wire::Http { client, headers } => builder
                .with_http_client(client.clone())
                .with_headers(headers.clone()),
            Wire::Grpc { .. } => builder,
        }
    }

    pub fn span_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, SinkError> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match self.wire {
            Wire::Grpc { .. } => self.grpc(builder.with_tonic()).build(),
            Wire::Http { .. } => self.http(builder.with_http()).build(),
        }
        .map_err(|e| self.bad(e))
    }

    pub fn metric_exporter(&self) -> Result<opentelemetry_otlp::MetricExporter, SinkError> {
        let builder = opentelemetry_otlp::MetricExporter::builder();
        match self.wire {
            Wire::Grpc { .. } => self.grpc(builder.with_tonic()).build(),
            Wire::Http { .. } => self.http(builder.with_http()).build(),
        }
        .map_err(|e| self.bad(e))
    }
}
