//! Stage `transcript`: see ARCHITECTURE.md (being written).
