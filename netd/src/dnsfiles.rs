//! Container /etc files (filled in next).
