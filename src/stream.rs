//! Stage `stream`: see ARCHITECTURE.md (being written).
