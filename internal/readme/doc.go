// Package readme holds the test that keeps the project README's Go
// example compiling against today's API. It has no code of its own.
package readme
