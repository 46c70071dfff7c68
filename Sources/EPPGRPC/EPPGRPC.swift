// EPPGRPC module
