//! `tenant-sim`: a simulated Microsoft identity platform and Microsoft Graph v1.0 for several
//! tenants at once. (Being built: see the foundation issue.)
