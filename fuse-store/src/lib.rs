//! hypernar-fuse-store: a read-only FUSE view of a binary cache, decrypted
//! on the fly from encrypted blocks (skeleton).
//!
//! It will see blocks only through a small block-source trait, never peers
//! or HTTP, and will never write decrypted bytes to disk.
