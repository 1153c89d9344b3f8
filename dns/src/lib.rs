//! pier-dns: node-local cluster DNS. Answers the cluster domain from the node snapshot
//! (Kubernetes DNS specification 1.1.0) and forwards everything else through a cache.

pub mod zone;
