//! Stage `resample`: see ARCHITECTURE.md (being written).
