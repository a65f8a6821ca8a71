// Package api is the host↔guest protocol of microVM pods: protobuf messages
// and the ttrpc Agent service, generated from agent.proto. The generated
// code is committed; regenerate it with `go generate ./pkg/agent/api`
// (needs protoc, protoc-gen-go and protoc-gen-go-ttrpc).
package api

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative agent.proto

// Protocol is the version of the API in this build. An agent answers
// Health with it; the host refuses an agent of another protocol.
const Protocol = 1
