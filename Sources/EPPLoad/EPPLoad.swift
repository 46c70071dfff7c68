// EPPLoad module
