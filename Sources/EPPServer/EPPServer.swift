// EPPServer module
