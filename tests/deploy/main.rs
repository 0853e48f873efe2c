//! Deployment checks (being written).
