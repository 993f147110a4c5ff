//! Stage `decode`: see ARCHITECTURE.md (being written).
