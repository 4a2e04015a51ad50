//! Hand-written schemas for fields whose derived schema cannot say what the API server should
//! check (free-form maps, item patterns of lists).

use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 label: what a zone name must be to become part of a StatefulSet name.
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// `zones.names`: 1 to 16 distinct DNS labels of at most 20 characters.
pub(super) fn zone_names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 16,
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "minLength": 1, "maxLength": 20, "pattern": DNS_LABEL },
    })
}

/// `ring.etcd.endpoints`: http or https URLs without a path (which scheme: `ring.etcd.tls`).
pub(super) fn etcd_endpoints(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "string", "pattern": "^https?://[^/]+$" },
    })
}

/// An object whose keys the API server keeps as they are; Norn's parser checks them.
pub(super) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A map from names to free-form objects.
pub(super) fn free_form_object_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// A map from tenant IDs to durations.
pub(super) fn duration_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$" },
    })
}
