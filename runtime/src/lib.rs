//! pier-runtime: the compact container engine that runs the pods pier balances (not yet implemented).
