print("epp-load")
