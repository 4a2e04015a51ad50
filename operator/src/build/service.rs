//! Services: per component a client Service (load-balanced, what users and other components
//! call) and a headless Service (governs the StatefulSet, gives each pod a DNS name).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{GRPC_PORT, HTTP_PORT};
use super::names::Component;
use super::object_meta;
use crate::validate::ValidCluster;

/// Client and headless Services of every component, in the order of [`Component::ALL`].
pub fn services(v: &ValidCluster) -> Vec<Service> {
    Component::ALL.iter().flat_map(|c| [client(v, *c), headless(v, *c)]).collect()
}

fn norn_ports() -> Vec<ServicePort> {
    vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]
}

/// A TCP port named `name` forwarding to the container port of the same name.
pub(super) fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn client(v: &ValidCluster, c: Component) -> Service {
    let names = &v.names;
    Service {
        metadata: object_meta(v, names.component(c, None), names.component_labels(c.as_str(), None)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector_labels(c.as_str(), None)),
            ports: Some(norn_ports()),
            ..Default::default()
        }),
        status: None,
    }
}

fn headless(v: &ValidCluster, c: Component) -> Service {
    let names = &v.names;
    Service {
        metadata: object_meta(v, names.headless(c), names.component_labels(c.as_str(), None)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(names.selector_labels(c.as_str(), None)),
            ports: Some(norn_ports()),
            // Ingesters join the ring before they are ready; their peers must resolve them then.
            publish_not_ready_addresses: Some(c == Component::Ingester),
            ..Default::default()
        }),
        status: None,
    }
}
