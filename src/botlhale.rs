//! Stage `botlhale`: see ARCHITECTURE.md (being written).
