//! pier-proxy: the userspace L4 TCP/UDP and L7 HTTP proxy that serves service ports from the node snapshot (not yet implemented).
