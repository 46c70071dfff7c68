// EPPSim module
