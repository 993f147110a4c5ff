//! Stage `segment`: see ARCHITECTURE.md (being written).
