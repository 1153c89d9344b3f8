//! pier-runtime: the compact container engine that runs the pods pier balances: OCI images,
//! containers through youki's libcontainer, bridge networking, probes, and Deployments.

pub mod container;
pub mod error;
pub mod image;
pub mod metrics;
pub mod network;
pub mod routes;

pub use container::{ContainerConfig, ContainerRecord, Engine, EngineConfig, RestartPolicy, State};
pub use error::{Error, Result};
pub use network::{Network, NetworkConfig};
pub mod node;

pub use node::{Node, NodeConfig};
