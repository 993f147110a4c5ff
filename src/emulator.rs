//! Stage `emulator`: see ARCHITECTURE.md (being written).
