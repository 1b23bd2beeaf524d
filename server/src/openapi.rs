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

/// The members of a guest ↔ hypervisor link (`GuestLink`, and `HostDetail.hypervisor` inline:
/// OpenAPI 3.0 cannot make a `$ref` nullable).
fn guest_link_properties() -> Value {
    json!({
        "hostname": {"type": "string", "description": "the other host: the hypervisor in `hypervisor`, the guest in `guests_in_cmdb`"},
        "system_uuid": {"type": "string", "description": "in `guests_in_cmdb`: the UUID as the hypervisor lists it"},
        "guest_name": {"nullable": true, "description": "the guest's name on the hypervisor"},
        "state": {"nullable": true, "description": "the guest's state on the hypervisor (`running`, `shut_off`, ...)"},
        "uuid_match": {"type": "string", "enum": ["exact", "byte_swapped"], "description": "byte_swapped: the first three fields read in the other SMBIOS byte order"}
    })
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

fn put_fields_responses() -> Value {
    let mut r = with_auth_errors(json!({
        "200": json_response("the fields as stored now, and how many changed", json!({
            "allOf": [schema_ref("HostFields"), {"type": "object", "required": ["changed"],
                "properties": {"changed": {"type": "integer", "minimum": 0}}}]})),
        "400": problem_response("bad path, or a body that is not a fields object (`code`: `malformed_fields`; `detail` names the field): an unknown field, a value neither string nor null, over 4000 characters, control characters"),
        "404": problem_response("no such host (`code`: `unknown_host`)")
    }));
    r["403"] = problem_response("not an admin key (`code`: `forbidden`): fleet, host and read keys may not edit hand-entered fields");
    r
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

fn inventory_params() -> Value {
    let q = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    json!([
        q("q", "search words: each must begin a word of the host (name, serial, UUID, machine-id, MAC, IP, model, any part attribute, hand-entered fields)", json!({"type": "string", "maxLength": 256})),
        q("os", "exact OS name (the summary's os fact)", json!({"type": "string"})),
        q("vendor", "exact vendor", json!({"type": "string"})),
        q("model", "exact model", json!({"type": "string"})),
        q("memory_min_gib", "memory at least this many GiB", json!({"type": "integer", "minimum": 0, "maximum": 1_073_741_824})),
        q("memory_max_gib", "memory at most this many GiB", json!({"type": "integer", "minimum": 0, "maximum": 1_073_741_824})),
        q("seen_after", "last report on or after this day (YYYY-MM-DD, UTC) or time", json!({"type": "string", "format": "date"})),
        q("seen_before", "last report on or before this day (YYYY-MM-DD, UTC) or before this time", json!({"type": "string", "format": "date"})),
        q("stale", "no report for the server's stale days, or never reported (true), or reported since (false)", json!({"type": "boolean"})),
        q("errors", "a collector failed in the host's last report", json!({"type": "boolean"})),
        q("tag", "has this hand-entered tag", json!({"type": "string"})),
        q("sort", "sort key (default hostname)", json!({"type": "string", "enum": ["hostname", "last_seen", "os", "vendor", "model", "memory"]})),
        q("order", "sort order (default asc)", json!({"type": "string", "enum": ["asc", "desc"]})),
        q("cursor", "the X-Next-Cursor of the previous page", json!({"type": "string"})),
        q("limit", "page size; without it every matching host", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
        q("format", "csv: the same as Accept: text/csv", json!({"type": "string", "enum": ["json", "csv"]}))
    ])
}

fn change_filter_params() -> Value {
    let q = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    json!([
        q(
            "host",
            "only this host's changes (an unknown name gives none)",
            json!({"type": "string"})
        ),
        q(
            "component",
            "only this component: PLUGIN (its facts) or PLUGIN.LIST (a part list)",
            json!({"type": "string"})
        ),
        q(
            "action",
            "only this action",
            json!({"type": "string", "enum": ["added", "removed", "changed"]})
        ),
        q(
            "since",
            "changes on or after this day (YYYY-MM-DD, UTC) or time",
            json!({"type": "string", "format": "date"})
        ),
        q(
            "until",
            "changes on or before this day (YYYY-MM-DD, UTC) or before this time",
            json!({"type": "string", "format": "date"})
        )
    ])
}

pub fn document() -> Value {
    let security = json!([{"key": [], "timestamp": [], "nonce": [], "signature": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "auto-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The CMDB API of auto-client. Every request except /healthz, /readyz, /metrics (loopback or a bearer token) and this document is signed: \
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
            "/readyz": {"get": {
                "summary": "readiness: the database takes writes now", "operationId": "readyz", "security": [],
                "description": "A real write (the write transaction a report takes, one heartbeat row, commit), and on \
                    SQLite at least the largest report body free on the database's filesystem. One probe at a time, its \
                    answer reused for 1 s; a probe slower than 5 s is a 503.",
                "responses": {
                    "200": {"description": "ready", "content": {"text/plain": {"schema": {"type": "string", "enum": ["ready\n"]}}}},
                    "503": {"description": "not ready: the reason on one line (e.g. `database not writable: ...`), with Retry-After",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}
                }
            }},
            "/metrics": {"get": {
                "summary": "this process's figures, Prometheus text format 0.0.4", "operationId": "metrics", "security": [],
                "description": "auto_server_reports_total{outcome}, auto_server_ingest_duration_seconds (histogram), \
                    auto_server_hosts, auto_server_hosts_stale, auto_server_database_errors_total, \
                    auto_server_open_connections, auto_server_refused_connections_total, auto_server_build_info, \
                    auto_server_uptime_seconds. Open to loopback clients; others send `Authorization: Bearer` with the \
                    configured metrics_token.",
                "responses": {
                    "200": {"description": "the exposition text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "403": {"description": "not on loopback and no (or a wrong) metrics_token", "content": {"text/plain": {"schema": {"type": "string"}}}}
                }
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
                    "409": problem_response("a new host's name belongs to another host (`code`: `hostname_taken`); nothing was stored"),
                    "415": problem_response("a content-encoding other than identity or gzip (`code`: `unsupported_encoding`)")
                }))
            }},
            "/api/v1/hosts/pending": {"get": {
                "summary": "hosts due for collection", "operationId": "pendingHosts",
                "description": "Registered hosts with an address that have not reported since 00:00 UTC today.",
                "responses": with_auth_errors(json!({"200": json_response("due hosts, by name", array_of("PendingHost"))}))
            }},
            "/api/v1/hosts": {
                "get": {
                    "summary": "the inventory: search, filters, sort, cursor paging; JSON or CSV", "operationId": "listHosts",
                    "description": "Without parameters: every host, by name (case-insensitive). `q` matches host names, serials, UUIDs, \
                        machine-ids, MACs, IPs, models and any part attribute (each word of the query must begin a word the host has). \
                        Without `limit` every matching host is returned (the export of exactly the filtered set); with it, a page, and \
                        the next page's cursor in `X-Next-Cursor` and a `Link: <...>; rel=\"next\"`. `Accept: text/csv` (or \
                        `format=csv`) answers CSV with the same rows.",
                    "parameters": inventory_params(),
                    "responses": with_auth_errors(json!({
                        "200": {
                            "description": "the matching hosts, in the asked order",
                            "headers": {
                                "X-Next-Cursor": {"schema": {"type": "string"}, "description": "the next page's cursor (only when there is one)"},
                                "Link": {"schema": {"type": "string"}, "description": "the next page's URL, rel=\"next\""}
                            },
                            "content": {
                                "application/json": {"schema": array_of("HostSummary")},
                                "text/csv": {"schema": {"type": "string", "description": "RFC 4180, a header line: hostname, os, os_version, vendor, model, memory_bytes, serial, system_uuid, machine_id, address, last_report_at, stale, has_errors, owner, location, rack, tags, notes, created_at"}}
                            }
                        },
                        "400": problem_response("bad query parameter (`code`: `bad_query`): a limit out of 1..1000, an unknown sort, a cursor this server did not give, a bad date")
                    }))
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
                "summary": "one host's current asset with all its components (or as it was at a time)", "operationId": "getHost",
                "parameters": [hostname_param(),
                    {"name": "at", "in": "query", "required": false,
                     "description": "show the facts and parts as they were then (YYYY-MM-DD: the end of that day, UTC; or RFC 3339), rebuilt from the change log; volatile facts are not kept",
                     "schema": {"type": "string", "format": "date"}}],
                "responses": with_auth_errors(json!({
                    "200": json_response("the host", schema_ref("HostDetail")),
                    "400": problem_response("bad path, or a bad `at` (`code`: `bad_query`)"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }},
            "/api/v1/hosts/{hostname}/reports": {"get": {
                "summary": "the host's applied reports, newest first (ids for the diff)", "operationId": "hostReports",
                "parameters": [hostname_param()],
                "responses": with_auth_errors(json!({
                    "200": json_response("reports", array_of("ReportRef")),
                    "400": problem_response("bad path"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }},
            "/api/v1/hosts/{hostname}/diff": {"get": {
                "summary": "what differs between the host after one report and after another", "operationId": "hostDiff",
                "parameters": [hostname_param(),
                    {"name": "from", "in": "query", "required": true, "description": "a report id of this host", "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
                    {"name": "to", "in": "query", "required": true, "description": "a report id of this host", "schema": {"type": "string", "minLength": 1, "maxLength": 64}}],
                "responses": with_auth_errors(json!({
                    "200": json_response("the differences", schema_ref("Diff")),
                    "400": problem_response("bad path or query (`code`: `bad_query`)"),
                    "404": problem_response("no such host or report of it (`code`: `unknown_host`, `unknown_report`)")
                }))
            }},
            "/api/v1/hosts/{hostname}/fields": {"get": {
                "summary": "the host's hand-entered fields and who changed what", "operationId": "hostFields",
                "parameters": [hostname_param()],
                "responses": with_auth_errors(json!({
                    "200": json_response("the fields and their change log, newest first", json!({
                        "allOf": [schema_ref("HostFields"), {"type": "object", "required": ["changes"],
                            "properties": {"changes": array_of("FieldChange")}}]})),
                    "400": problem_response("bad path"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }, "put": {
                "summary": "set the host's hand-entered fields (admin keys only); each change is logged with the key's name as `key:NAME`",
                "operationId": "setHostFields",
                "parameters": [hostname_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("FieldsUpdate")}}},
                "responses": put_fields_responses()
            }},
            "/api/v1/hosts/{hostname}/changes": {"get": {
                "summary": "one host's change log, newest first", "operationId": "hostChanges",
                "parameters": [hostname_param(), page_params()[0], page_params()[1],
                    change_filter_params()[1], change_filter_params()[2], change_filter_params()[3], change_filter_params()[4]],
                "responses": with_auth_errors(json!({
                    "200": json_response("changes", array_of("Change")),
                    "400": problem_response("bad query (`code`: `bad_query`)"),
                    "404": problem_response("no such host (`code`: `unknown_host`)")
                }))
            }},
            "/api/v1/changes/moved": {"get": {
                "summary": "moved parts: a part serial removed from one host and added to another (among the last 20,000 part changes)",
                "operationId": "movedParts",
                "responses": with_auth_errors(json!({"200": json_response("moves, newest first", array_of("MovedPart"))}))
            }},
            "/api/v1/summary": {"get": {
                "summary": "the dashboard's figures: counts, shared identities, failing collectors, distributions, recent changes",
                "operationId": "summary",
                "responses": with_auth_errors(json!({"200": json_response("the figures", schema_ref("Summary"))}))
            }},
            "/api/v1/changes": {"get": {
                "summary": "the change log of every host, newest first", "operationId": "changes",
                "parameters": [page_params()[0], page_params()[1], change_filter_params()[0], change_filter_params()[1],
                    change_filter_params()[2], change_filter_params()[3], change_filter_params()[4]],
                "responses": with_auth_errors(json!({
                    "200": json_response("changes", array_of("Change")),
                    "400": problem_response("bad query (`code`: `bad_query`)")
                }))
            }},
            "/api/v1/errors": {"get": {
                "summary": "the error log: failed collectors, identity conflicts, rejected reports; newest first",
                "operationId": "errors",
                "parameters": [page_params()[0], page_params()[1],
                    {"name": "host", "in": "query", "required": false, "description": "only this host's rows (its name as logged)", "schema": {"type": "string"}},
                    {"name": "code", "in": "query", "required": false, "description": "only rows with this code", "schema": {"type": "string"}}],
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
                }},
                "resend": {"type": "array", "items": {"type": "string"}, "description": "PLUGIN.LIST sent as unchanged whose digest the server does not hold: send them whole next time (absent when none)"}
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
                "machine_id": nullable_string(), "serial": nullable_string(), "system_uuid": nullable_string(),
                "os": nullable_string(), "os_version": nullable_string(), "vendor": nullable_string(), "model": nullable_string(),
                "memory_bytes": {"type": "integer", "nullable": true},
                "owner": nullable_string(), "location": nullable_string(), "rack": nullable_string(), "notes": nullable_string(),
                "tags": {"type": "array", "items": {"type": "string"}},
                "has_errors": {"type": "boolean", "description": "a collector failed in the last report"},
                "stale": {"type": "boolean", "description": "no report for the server's stale days, or never reported"}
            }
        },
        "HostFields": {
            "type": "object", "required": ["owner", "location", "rack", "tags", "notes", "updated_at", "updated_by"],
            "description": "hand-entered fields: set by people on the pages, never by a report",
            "properties": {
                "owner": nullable_string(), "location": nullable_string(), "rack": nullable_string(),
                "tags": {"type": "string", "nullable": true, "description": "comma-separated"}, "notes": nullable_string(),
                "updated_at": {"type": "string", "format": "date-time", "nullable": true}, "updated_by": nullable_string()
            }
        },
        "FieldsUpdate": {
            "type": "object", "additionalProperties": false,
            "description": "the fields to set: a string sets one, an empty string or null clears it, a field left out keeps its value",
            "properties": {
                "owner": {"type": "string", "nullable": true, "maxLength": 4000},
                "location": {"type": "string", "nullable": true, "maxLength": 4000},
                "rack": {"type": "string", "nullable": true, "maxLength": 4000},
                "tags": {"nullable": true, "description": "comma-separated, or an array of tags",
                    "oneOf": [{"type": "string", "maxLength": 4000}, {"type": "array", "items": {"type": "string"}}]},
                "notes": {"type": "string", "nullable": true, "maxLength": 4000}
            }
        },
        "FieldChange": {
            "type": "object", "required": ["id", "at", "by", "field", "old", "new"],
            "properties": {
                "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "by": {"type": "string"},
                "field": {"type": "string"}, "old": nullable_string(), "new": nullable_string()
            }
        },
        "ReportRef": {
            "type": "object", "required": ["report_id", "received_at"],
            "properties": {"report_id": {"type": "string"}, "received_at": {"type": "string", "format": "date-time"}}
        },
        "Diff": {
            "type": "object", "required": ["hostname", "from", "to", "changes"],
            "properties": {
                "hostname": {"type": "string"}, "from": schema_ref("ReportRef"), "to": schema_ref("ReportRef"),
                "changes": {"type": "array", "items": {
                    "type": "object", "required": ["component", "item", "action", "old", "new"],
                    "properties": {
                        "component": {"type": "string"}, "item": {"type": "string"},
                        "action": {"type": "string", "enum": ["added", "removed", "changed"]},
                        "old": {"nullable": true}, "new": {"nullable": true}
                    }
                }}
            }
        },
        "MovedPart": {
            "type": "object", "required": ["serial", "component", "from_host", "from_item", "removed_at", "to_host", "to_item", "added_at"],
            "properties": {
                "serial": {"type": "string"}, "component": {"type": "string"},
                "from_host": {"type": "string"}, "from_item": {"type": "string"}, "removed_at": {"type": "string", "format": "date-time"},
                "to_host": {"type": "string"}, "to_item": {"type": "string"}, "added_at": {"type": "string", "format": "date-time"}
            }
        },
        "Summary": {
            "type": "object",
            "required": ["hosts", "reported_today", "stale", "never_reported", "stale_days", "shared_identities", "failing_collectors", "charts", "recent_changes"],
            "properties": {
                "hosts": {"type": "integer"}, "reported_today": {"type": "integer"}, "stale": {"type": "integer", "description": "hosts with no report for stale_days, or none ever (the same hosts as GET /api/v1/hosts?stale=true)"},
                "never_reported": {"type": "integer"}, "stale_days": {"type": "integer"},
                "shared_identities": {"type": "array", "items": {"type": "object", "required": ["identity", "value", "hosts"],
                    "properties": {"identity": {"type": "string"}, "value": {"type": "string"}, "hosts": {"type": "array", "items": {"type": "string"}}}}},
                "failing_collectors": {"type": "array", "items": {"type": "object", "required": ["collector", "hosts"],
                    "properties": {"collector": nullable_string(), "hosts": {"type": "integer"}}}},
                "charts": {"type": "object", "description": "os, vendor, model, memory_bytes: the ten most common values",
                    "additionalProperties": {"type": "array", "items": {"type": "object", "required": ["value", "hosts"],
                        "properties": {"value": {"nullable": true}, "hosts": {"type": "integer"}}}}},
                "recent_changes": array_of("Change")
            }
        },
        "HostDetail": {
            "allOf": [schema_ref("HostSummary"), {
                "type": "object",
                "required": ["plugins", "fields", "hypervisor", "guests_in_cmdb"],
                "properties": {
                    "fields": schema_ref("HostFields"),
                    "hypervisor": {"type": "object", "nullable": true,
                        "required": ["hostname", "guest_name", "state", "uuid_match"],
                        "properties": guest_link_properties(),
                        "description": "the host whose `virt.guests` list has a part with this host's system UUID (now, also with ?at=); null when none. `guest_name` and `state` are the hypervisor's words"},
                    "guests_in_cmdb": {"type": "array", "nullable": true, "items": schema_ref("GuestLink"),
                        "description": "for a host with a `virt.guests` list: its guests that are hosts of the CMDB (by system UUID), by host name; null for a host without that list"},
                    "as_of": {"type": "string", "format": "date-time", "description": "present with ?at=: the time shown"},
                    "plugins": {"type": "object", "description": "every collector's stored data, by collector name",
                        "additionalProperties": schema_ref("StoredPlugin")}
                }
            }]
        },
        "GuestLink": {
            "type": "object", "required": ["hostname", "guest_name", "state", "uuid_match"],
            "description": "a guest and its hypervisor, both hosts of the CMDB, linked by the guest's SMBIOS system UUID",
            "properties": guest_link_properties()
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
                     "properties": {"unavailable": {"type": "string", "minLength": 1, "description": "why the list could not be seen: its stored parts are kept, never logged as removed"}}},
                    {"type": "object", "additionalProperties": false, "required": ["unchanged"],
                     "properties": {"unchanged": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": "the list's digest: the server keeps what it holds when the digest is the stored one, else names the list in the answer's resend"}}}
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
                "code": {"type": "string", "description": "plugin_failed, hostname_taken, identity_shared, malformed_report, hostname_case_duplicate, stale_host_removed (retention removed a host not seen for remove_stale_after_days)"},
                "hostname": nullable_string(), "report_id": nullable_string(), "plugin": nullable_string(),
                "message": {"type": "string"}
            }
        }
    })
}
