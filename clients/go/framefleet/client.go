// Package framefleet is a small client for a framefleet coordinator's JobService.
//
//	client, err := framefleet.Dial("127.0.0.1:7070")
//	job, err := client.Submit(ctx, spec)
//	done, err := client.Wait(ctx, job.GetId())
//	fmt.Println(done.GetOutputUrl())
//
// The generated stubs are in package framefleetv1; this package adds job building
// (TemplateJob, LoadTemplate), progress watching and error classes on top of them.
package framefleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
)

// MaxMessageBytes is the largest gRPC message the client sends or receives: a job carries its
// whole template bundle (the coordinator accepts bundles up to 48 MiB).
const MaxMessageBytes = 64 << 20

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	jobs pb.JobServiceClient
}

// Dial returns a client for the coordinator at target ("host:port"). With no options the
// connection is plaintext, like the coordinator's own listener; options are passed on to
// grpc.NewClient and override that. The connection is made lazily, on the first call.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	defaults := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
		),
	}
	conn, err := grpc.NewClient(target, append(defaults, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, jobs: pb.NewJobServiceClient(conn)}, nil
}

// WithTLS is the dial option for a coordinator that serves TLS (--tls-cert) with a certificate
// signed by the CA in caFile (framefleet certs ca; FRAMEFLEET_TLS_CA for the Python client).
func WithTLS(caFile string) (grpc.DialOption, error) {
	creds, err := credentials.NewClientTLSFromFile(caFile, "")
	if err != nil {
		return nil, fmt.Errorf("TLS CA %s: %w", caFile, err)
	}
	return grpc.WithTransportCredentials(creds), nil
}

// WithToken sends a client token (framefleet token add) with every call, as
// "authorization: Bearer TOKEN". Use it with WithTLS: a token on a plaintext connection is
// readable by anyone on the way (only a loopback coordinator should see that).
func WithToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer(token))
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// newRequestID is a random id for an idempotent submit.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Jobs is the generated JobService stub, for calls this package does not wrap (ListJobs).
func (c *Client) Jobs() pb.JobServiceClient { return c.jobs }

// Submit queues a job and returns its record (state queued, or succeeded at once when the
// same output already exists). A refused job returns an *Error with class INVALID_JOB. Each
// call carries a new request id; SubmitRetry resends one.
func (c *Client) Submit(ctx context.Context, spec *pb.JobSpec) (*pb.Job, error) {
	return c.SubmitRetry(ctx, spec, newRequestID())
}

// SubmitRetry queues a job under requestID: calling it again with the same id (after a
// timeout, from another process) returns the first job instead of queuing a second one.
func (c *Client) SubmitRetry(ctx context.Context, spec *pb.JobSpec, requestID string) (*pb.Job, error) {
	resp, err := c.jobs.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec, RequestId: requestID})
	if err != nil {
		return nil, translate(err)
	}
	return resp.GetJob(), nil
}

// Get returns a job's current record.
func (c *Client) Get(ctx context.Context, jobID string) (*pb.Job, error) {
	resp, err := c.jobs.GetJob(ctx, &pb.GetJobRequest{JobId: jobID})
	if err != nil {
		return nil, translate(err)
	}
	return resp.GetJob(), nil
}

// Cancel cancels a queued or running job and returns its record.
func (c *Client) Cancel(ctx context.Context, jobID string) (*pb.Job, error) {
	resp, err := c.jobs.CancelJob(ctx, &pb.CancelJobRequest{JobId: jobID})
	if err != nil {
		return nil, translate(err)
	}
	return resp.GetJob(), nil
}

// Watch calls progress with each state change and progress update of a job, starting with its
// current state, until the job reaches a final state; it returns the last record seen. A
// non-nil error from progress stops watching and is returned.
func (c *Client) Watch(
	ctx context.Context, jobID string, progress func(*pb.WatchJobResponse) error,
) (*pb.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.jobs.WatchJob(ctx, &pb.WatchJobRequest{JobId: jobID})
	if err != nil {
		return nil, translate(err)
	}
	var last *pb.Job
	for {
		update, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, translate(err)
		}
		last = update.GetJob()
		if progress != nil {
			if err := progress(update); err != nil {
				return last, err
			}
		}
	}
}

// Wait blocks until the job ends and returns its final record. It returns a *JobFailedError
// unless the job succeeded.
func (c *Client) Wait(ctx context.Context, jobID string) (*pb.Job, error) {
	job, err := c.Watch(ctx, jobID, nil)
	if err != nil {
		return job, err
	}
	if !Final(job.GetState()) {
		// The stream ended early (the coordinator restarted, say): ask once more.
		if job, err = c.Get(ctx, jobID); err != nil {
			return nil, err
		}
	}
	if job.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
		return job, &JobFailedError{Job: job}
	}
	return job, nil
}

// Final reports whether a job in this state will not change again.
func Final(state pb.JobState) bool {
	switch state {
	case pb.JobState_JOB_STATE_SUCCEEDED, pb.JobState_JOB_STATE_FAILED,
		pb.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

// StateName is a job state without its prefix, lower case: "queued", "succeeded".
func StateName(state pb.JobState) string {
	return strings.ToLower(strings.TrimPrefix(state.String(), "JOB_STATE_"))
}

// Error is a refusal from the coordinator with its error class, e.g. INVALID_JOB.
type Error struct {
	// Class is the name of Code without its prefix, e.g. "INVALID_JOB".
	Class   string
	Code    pb.ErrorClass
	Message string
	// Err is the gRPC status error it came from.
	Err error
}

func (e *Error) Error() string { return e.Class + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Err }

// JobFailedError is returned by Wait for a job that failed or was cancelled.
type JobFailedError struct {
	Job *pb.Job
}

// Class is the failed job's error class (ERROR_CLASS_UNSPECIFIED for a cancelled job).
func (e *JobFailedError) Class() pb.ErrorClass {
	if e.Job.GetError() != pb.ErrorClass_ERROR_CLASS_UNSPECIFIED {
		return e.Job.GetError()
	}
	// A coordinator that predates the enum sends the name alone.
	return classOf(e.Job.GetErrorClass())
}

func (e *JobFailedError) Error() string {
	class := ClassName(e.Class())
	if e.Class() == pb.ErrorClass_ERROR_CLASS_UNSPECIFIED {
		class = strings.ToUpper(StateName(e.Job.GetState()))
	}
	message := e.Job.GetErrorMessage()
	if message == "" {
		message = class
	}
	return fmt.Sprintf("job %s %s: %s: %s", e.Job.GetId(), StateName(e.Job.GetState()), class, message)
}

// ClassName is an error class without its prefix: "INVALID_JOB".
func ClassName(class pb.ErrorClass) string {
	return strings.TrimPrefix(class.String(), "ERROR_CLASS_")
}

func classOf(name string) pb.ErrorClass {
	if name == "" {
		return pb.ErrorClass_ERROR_CLASS_UNSPECIFIED
	}
	if value, ok := pb.ErrorClass_value["ERROR_CLASS_"+name]; ok {
		return pb.ErrorClass(value)
	}
	return pb.ErrorClass_ERROR_CLASS_INTERNAL
}

// translate turns a refusal into an *Error: the coordinator puts a framefleet.v1.ErrorDetail
// in the status details. Any other error is returned as it is.
func translate(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, detail := range st.Details() {
		if d, ok := detail.(*pb.ErrorDetail); ok {
			return &Error{Class: ClassName(d.GetErrorClass()), Code: d.GetErrorClass(), Message: d.GetMessage(), Err: err}
		}
	}
	return err
}
