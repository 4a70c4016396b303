//! Aggregation of `client_ip` to a network prefix (HLE_CLIENT_IP_PREFIX_V4/V6).
