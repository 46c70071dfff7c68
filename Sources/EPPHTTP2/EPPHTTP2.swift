// EPPHTTP2 module
