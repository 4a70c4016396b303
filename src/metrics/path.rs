//! Normalisation of `http_request_path` before it becomes a label (HLE_PATH_*).
