// Package adminapi is cradle's admin image service (cradle.admin.v1.Images):
// protobuf messages and the gRPC service, generated from admin.proto. The
// daemon serves it on the CRI socket (pkg/cri); `cradle images` is its
// client. The generated code is committed; regenerate it with
// `go generate ./pkg/cri/adminapi` (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc).
package adminapi

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative admin.proto
