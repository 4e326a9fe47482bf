//! Parsers for user input (filled in next).
