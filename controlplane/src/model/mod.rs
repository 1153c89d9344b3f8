//! Kubernetes-compatible object model: types, parsing and validation.

pub mod deployment;
pub mod endpointslice;
mod ignored;
pub mod meta;
pub mod namespace;
pub mod object;
pub mod pod;
pub mod report;
pub mod route;
pub mod service;
pub mod syntax;
pub mod traffic_policy;
mod validation;

pub use deployment::Deployment;
pub use endpointslice::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
pub use meta::{IntOrString, LabelSelector, ObjectMeta, ObjectReference, SelectorQuery};
pub use namespace::{Namespace, ServiceAccount};
pub use object::{Kind, Object, ObjectError, Parsed};
pub use pod::Pod;
pub use route::{BackendRef, HttpRoute, L4Route, ParentReference};
pub use service::{Service, ServicePort};
