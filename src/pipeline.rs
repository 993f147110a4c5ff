//! Stage `pipeline`: see ARCHITECTURE.md (being written).
