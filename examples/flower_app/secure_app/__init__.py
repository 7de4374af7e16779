"""secure-app: a Flower app trained privately (DP-SGD) and securely (secureagg)."""
