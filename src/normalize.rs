//! Stage `normalize`: see ARCHITECTURE.md (being written).
