//! Stage `export`: see ARCHITECTURE.md (being written).
