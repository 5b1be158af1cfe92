package main

// main is a placeholder so the package builds; replaced by main.go.
func main() {}
