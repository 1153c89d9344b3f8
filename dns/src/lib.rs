//! pier-dns: node-local cluster DNS answering from the node snapshot and forwarding the rest (not yet implemented).
