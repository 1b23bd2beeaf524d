//! The OpenAPI 3 document served at `GET /api/v1/openapi.json`: hand-written next to the handlers
//! (no derive macros over the proto types), and checked against the live server by
//! `scripts/schemathesis.sh`. Change a handler, change this.

use serde_json::{json, Value};

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

fn nullable_string() -> Value {
    json!({"type": "string", "nullable": true})
}

/// Every error a signed endpoint can answer, on top of its own.
fn with_auth_errors(mut responses: Value) -> Value {
    if let Some(m) = responses.as_object_mut() {
        m.insert(
            "401".into(),
            problem_response("authentication failed: missing, wrong, stale or replayed signature, or an unknown key (`code`: `unauthorized`; one body for every cause, the server log says which)"),
        );
        m.insert(
            "413".into(),
            problem_response("body larger than the server's limit"),
        );
        m.insert(
            "403".into(),
            problem_response("the key's scope does not allow this (`code`: `forbidden`): a read key writing, a host key writing another host"),
        );
        m.insert(
            "503".into(),
            json!({
                "description": "the database cannot write now (disk full, connection lost): nothing was stored; retry after the Retry-After header's seconds (`code`: `database_unavailable`)",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            }),
        );
    }
    responses
}

fn hostname_param() -> Value {
    json!({
        "name": "hostname", "in": "path", "required": true,
        "description": "the host's current name",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$", "not": {"enum": ["pending"]}}
    })
}

fn page_params() -> Value {
    json!([
        {"name": "limit", "in": "query", "required": false, "description": "rows to return, newest first (default 100)",
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "before", "in": "query", "required": false, "description": "only rows with an id below this (paging backwards)",
         "schema": {"type": "integer", "minimum": 1}}
    ])
}

pub fn document() -> Value {
    let security = json!([{"key": [], "timestamp": [], "nonce": [], "signature": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "auto-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The CMDB API of auto-client. Every request except /healthz and this document is signed: \
                hex(HMAC-SHA256(secret, METHOD \\n PATH_AND_QUERY \\n TIMESTAMP \\n NONCE \\n hex(sha256(body)))) \
                in x-auto-signature, with x-auto-key (key name), x-auto-timestamp (unix seconds, within the server's \
                window either way) and x-auto-nonce (32+ hex digits, never reused). Errors are application/problem+json."
        },
        "servers": [{"url": "/"}],
        "security": security,
        "paths": {
            "/healthz": {"get": {
                "summary": "liveness", "operationId": "healthz", "security": [],
                "responses": {"200": json_response("the server is up", json!({
                    "type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}))}
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "this document", "operationId": "openapi", "security": [],
                "responses": {"200": json_response("the OpenAPI document", json!({"type": "object"}))}
            }},
            "/api/v1/reports": {"post": {
                "summary": "ingest a report", "operationId": "postReport",
                "description": "Applies host identity (design.md), updates the current assets and writes the change \
                    and error logs in one transaction. The same report_id twice is applied once and answered with the first answer.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("Report")}}},
                "responses": with_auth_errors(json!({
                    "201": json_response("a new host was created", schema_ref("IngestResponse")),
                    "200": json_response("an existing host was updated or renamed (a refused rename carries the warning hostname_taken)", schema_ref("IngestResponse")),
                    "400": problem_response("malformed report (`code`: `malformed_report`; `detail` names the field): not json, a key twice in one object, schema 1, a value against the contract (negative size, 2^64, a string where a number belongs, a part id twice), more parts than the limit"),
                    "409": problem_response("a new host's name belongs to another host (`code`: `hostname_taken`); nothing was stored")
                }))
            }},
            "/api/v1/hosts/pending": {"get": {
                "summary": "hosts due for collection", "operationId": "pendingHosts",
                "description": "Registered hosts with an address that have not reported since 00:00 UTC today.",
                "responses": with_auth_errors(json!({"200": json_response("due hosts, by name", array_of("PendingHost"))}))
            }},
            "/api/v1/hosts": {
                "get": {
                    "summary": "the inventory", "operationId": "listHosts",
                    "responses": with_auth_errors(json!({"200": json_response("every host, by name (case-insensitive)", array_of("HostSummary"))}))
                },
                "post": {
                    "summary": "register a host for ssh/salt collection (or change its address)", "operationId": "addHost",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("NewHost")}}},
                    "responses": with_auth_errors(json!({
                        "201": json_response("registered", schema_ref("PendingHost")),
                        "200": json_response("the host existed; its address and port were updated", schema_ref("PendingHost")),
                        "400": problem_response("bad host name, address or port (`code`: `malformed_host`)")
                    }))
                }
            },
            "/api/v1/hosts/{hostname}": {"get": {
                "summary": "one host's current asset with all its components", "operationId": "getHost",
                "parameters": [hostname_param()],
                "responses": with_auth_errors(json!({
                    "200": json_response("the host", schema_ref("HostDetail")),
                    "400": problem_response("bad path"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }},
            "/api/v1/hosts/{hostname}/changes": {"get": {
                "summary": "one host's change log, newest first", "operationId": "hostChanges",
                "parameters": [hostname_param(), page_params()[0], page_params()[1]],
                "responses": with_auth_errors(json!({
                    "200": json_response("changes", array_of("Change")),
                    "400": problem_response("bad query (`code`: `bad_query`)"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }},
            "/api/v1/changes": {"get": {
                "summary": "the change log of every host, newest first", "operationId": "changes",
                "parameters": page_params(),
                "responses": with_auth_errors(json!({
                    "200": json_response("changes", array_of("Change")),
                    "400": problem_response("bad query (`code`: `bad_query`)")
                }))
            }},
            "/api/v1/errors": {"get": {
                "summary": "the error log: failed collectors, identity conflicts, rejected reports; newest first",
                "operationId": "errors",
                "parameters": page_params(),
                "responses": with_auth_errors(json!({
                    "200": json_response("errors", array_of("ErrorEntry")),
                    "400": problem_response("bad query (`code`: `bad_query`)")
                }))
            }}
        },
        "components": {
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "x-auto-key"},
                "timestamp": {"type": "apiKey", "in": "header", "name": "x-auto-timestamp"},
                "nonce": {"type": "apiKey", "in": "header", "name": "x-auto-nonce"},
                "signature": {"type": "apiKey", "in": "header", "name": "x-auto-signature"}
            },
            "schemas": schemas()
        }
    })
}

fn schemas() -> Value {
    json!({
        "Problem": {
            "type": "object", "description": "RFC 9457 problem details with a machine-readable code",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}
            }
        },
        "Report": {
            "type": "object", "additionalProperties": false,
            "required": ["schema", "report_id", "hostname", "collected_at", "agent", "plugins"],
            "properties": {
                "schema": {"type": "integer", "enum": [2], "description": "report schema 2 (docs/report-schema.md); schema 1 is refused with a 400 that says how to upgrade"},
                "report_id": {"type": "string", "format": "uuid", "description": "new for every collection, kept across retries"},
                "hostname": {"type": "string", "description": "what the target calls itself now"},
                "previous_hostname": {"type": "string", "nullable": true, "description": "the name the API knows it by (the cert), null for a new host"},
                "collected_at": {"type": "string", "format": "date-time"},
                "agent": {
                    "type": "object", "additionalProperties": false, "required": ["version", "mode"],
                    "properties": {"version": {"type": "string"}, "mode": {"type": "string"}}
                },
                "plugins": {"type": "object", "additionalProperties": schema_ref("PluginReport")}
            }
        },
        "PluginReport": {
            "oneOf": [schema_ref("PluginOk"), schema_ref("PluginError")],
            "discriminator": {"propertyName": "status", "mapping": {"ok": "#/components/schemas/PluginOk", "error": "#/components/schemas/PluginError"}}
        },
        "PluginOk": {
            "type": "object", "additionalProperties": false,
            "required": ["status", "version", "duration_ms", "data"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"},
                "duration_ms": {"type": "integer", "minimum": 0},
                "data": schema_ref("CollectorData")
            }
        },
        "PluginError": {
            "type": "object", "additionalProperties": false,
            "required": ["status", "duration_ms", "error"],
            "properties": {
                "status": {"type": "string", "enum": ["error"]}, "version": {"type": "string"},
                "duration_ms": {"type": "integer", "minimum": 0},
                "error": {
                    "type": "object", "additionalProperties": false, "required": ["kind", "message"],
                    "properties": {"kind": {"type": "string"}, "message": {"type": "string"}}
                }
            }
        },
        "IngestResponse": {
            "type": "object", "required": ["outcome", "hostname", "report_id", "warnings"],
            "properties": {
                "outcome": {"type": "string", "enum": ["created", "updated", "renamed"]},
                "hostname": {"type": "string", "description": "the name the API now knows the host by: the client's new cert"},
                "report_id": {"type": "string"},
                "warnings": {"type": "array", "items": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                }}
            }
        },
        "PendingHost": {
            "type": "object", "required": ["hostname", "address", "port"],
            "properties": {"hostname": {"type": "string"}, "address": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}
        },
        "NewHost": {
            "type": "object", "additionalProperties": false, "required": ["hostname", "address"],
            "properties": {
                "hostname": {"type": "string"}, "address": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22}
            }
        },
        "HostSummary": {
            "type": "object",
            "required": ["hostname", "address", "port", "created_at", "last_report_at", "last_report_id", "machine_id", "serial", "system_uuid"],
            "properties": {
                "hostname": {"type": "string"}, "address": nullable_string(),
                "port": {"type": "integer"},
                "created_at": {"type": "string", "format": "date-time"},
                "last_report_at": {"type": "string", "format": "date-time", "nullable": true},
                "last_report_id": nullable_string(),
                "machine_id": nullable_string(), "serial": nullable_string(), "system_uuid": nullable_string()
            }
        },
        "HostDetail": {
            "allOf": [schema_ref("HostSummary"), {
                "type": "object",
                "required": ["plugins"],
                "properties": {
                    "plugins": {"type": "object", "description": "every collector's stored data, by collector name",
                        "additionalProperties": schema_ref("StoredPlugin")}
                }
            }]
        },
        "StoredPlugin": {
            "type": "object", "required": ["facts", "volatile", "lists"],
            "properties": {
                "facts": {"type": "object", "additionalProperties": schema_ref("Value")},
                "volatile": {"type": "object", "additionalProperties": schema_ref("Value")},
                "lists": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["parts", "unavailable", "unavailable_since", "last_seen_at"],
                    "properties": {
                        "parts": {"type": "array", "items": schema_ref("Part")},
                        "unavailable": {"type": "string", "nullable": true, "description": "why the last report could not see this list (its parts are then the last known ones)"},
                        "unavailable_since": {"type": "string", "format": "date-time", "nullable": true},
                        "last_seen_at": {"type": "string", "format": "date-time", "nullable": true}
                    }
                }}
            }
        },
        "Scalar": {
            "nullable": true,
            "oneOf": [{"type": "string", "maxLength": 4096}, {"type": "number"}, {"type": "boolean"}]
        },
        "Value": {
            "nullable": true,
            "description": "a scalar, or an array of scalars or of flat objects of scalars. Unit suffixes: *_bytes, *_count, *_seconds, *_ms, *_kib are non-negative integers up to 2^63-1; *_mbps, *_mts, *_mhz, *_rpm, *_watts, *_percent, *_gts non-negative numbers",
            "oneOf": [
                {"type": "string", "maxLength": 4096}, {"type": "number"}, {"type": "boolean"},
                {"type": "array", "items": {"nullable": true, "oneOf": [
                    {"type": "string", "maxLength": 4096}, {"type": "number"}, {"type": "boolean"},
                    {"type": "object", "additionalProperties": schema_ref("Scalar")}
                ]}}
            ]
        },
        "Part": {
            "type": "object", "required": ["id"],
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "unique within its list; made of the list's key attributes"}},
            "additionalProperties": schema_ref("Value")
        },
        "CollectorData": {
            "type": "object", "additionalProperties": false,
            "description": "report schema 2 (docs/report-schema.md): names are [a-z][a-z0-9_]{0,63}",
            "properties": {
                "facts": {"type": "object", "additionalProperties": schema_ref("Value"), "description": "change-logged facts; null with a reasons entry = unknown (the stored value is kept)"},
                "volatile": {"type": "object", "additionalProperties": schema_ref("Value"), "description": "stored, never change-logged (values that change all the time)"},
                "identity": {
                    "type": "object", "additionalProperties": false,
                    "description": "identity hints; declared only when the collector could read their source",
                    "properties": {
                        "hostname": nullable_string(), "machine_id": nullable_string(),
                        "serial": nullable_string(), "system_uuid": nullable_string()
                    }
                },
                "lists": {"type": "object", "additionalProperties": {"oneOf": [
                    {"type": "object", "additionalProperties": false, "required": ["key", "parts"],
                     "properties": {
                        "key": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        "parts": {"type": "array", "maxItems": 10000, "items": schema_ref("Part")}
                     }},
                    {"type": "object", "additionalProperties": false, "required": ["unavailable"],
                     "properties": {"unavailable": {"type": "string", "minLength": 1, "description": "why the list could not be seen: its stored parts are kept, never logged as removed"}}}
                ]}},
                "reasons": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
        "Change": {
            "type": "object",
            "required": ["id", "hostname", "report_id", "at", "component", "item", "action", "old", "new"],
            "properties": {
                "id": {"type": "integer"}, "hostname": {"type": "string"}, "report_id": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "component": {"type": "string", "description": "PLUGIN for its facts, PLUGIN.LIST for a part list (e.g. gpu.gpus)"},
                "item": {"type": "string", "description": "the fact's name, or the part's id"},
                "action": {"type": "string", "enum": ["added", "removed", "changed"]},
                "old": {"description": "the value before (null when added)", "nullable": true},
                "new": {"description": "the value after (null when removed)", "nullable": true}
            }
        },
        "ErrorEntry": {
            "type": "object", "required": ["id", "at", "code", "hostname", "report_id", "plugin", "message"],
            "properties": {
                "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                "code": {"type": "string", "description": "plugin_failed, hostname_taken, identity_shared, malformed_report, hostname_case_duplicate"},
                "hostname": nullable_string(), "report_id": nullable_string(), "plugin": nullable_string(),
                "message": {"type": "string"}
            }
        }
    })
}
