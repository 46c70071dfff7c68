print("epp-sim")
