//! pier's Kubernetes-compatible object model: types, manifests, validation, object events, and
//! the views of the node snapshot built from objects. No store, no server: the dataplane's tests
//! and tools can build snapshots from manifests without the control plane.

pub mod analysis;
pub mod backend_tls;
pub mod columns;
pub mod condition;
pub mod config_map;
pub mod core_event;
pub mod deployment;
pub mod endpointslice;
pub mod env;
pub mod event;
pub mod gateway;
pub mod gateway_attach;
pub mod hpa;
mod ignored;
pub mod ingress;
pub mod ingress_annotations;
pub mod kind;
pub mod manifest;
pub mod meta;
pub mod namespace;
pub mod node;
pub mod object;
pub mod pod;
pub mod quantity;
pub mod replica_set;
pub mod report;
pub mod rollout;
pub mod rollout_status;
pub mod route;
pub mod secret;
pub mod service;
pub mod snapshot;
pub mod syntax;
pub mod time;
pub mod traffic_policy;
mod validation;
pub mod volume;

pub use config_map::ConfigMap;
pub use core_event::CoreEvent;
pub use deployment::Deployment;
pub use endpointslice::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
pub use event::{Event, EventType};
pub use hpa::HorizontalPodAutoscaler;
pub use meta::{IntOrString, LabelSelector, ObjectMeta, ObjectReference, SelectorQuery};
pub use namespace::{Namespace, ServiceAccount};
pub use node::{Lease, Node};
pub use object::{Kind, Object, ObjectError, Parsed};
pub use pod::Pod;
pub use replica_set::ReplicaSet;
pub use rollout::Rollout;
pub use route::{BackendRef, HttpRoute, L4Route, ParentReference};
pub use secret::Secret;
pub use service::{Service, ServicePort};
