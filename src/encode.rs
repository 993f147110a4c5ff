//! Stage `encode`: see ARCHITECTURE.md (being written).
