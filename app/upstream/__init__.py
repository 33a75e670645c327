"""HTTP to providers: pooled sessions, stream framings, auth signers."""
