//! Stage `vad`: see ARCHITECTURE.md (being written).
