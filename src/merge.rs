//! Stage `merge`: see ARCHITECTURE.md (being written).
