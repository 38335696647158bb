//! `mdops-graph`: the only way mdops talks to Microsoft Graph and the Microsoft identity platform.
//!
//! (Being built: see the Graph client issue.)
