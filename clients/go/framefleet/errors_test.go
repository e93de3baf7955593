package framefleet

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
)

// The class comes from the status details, never from the message text.
func TestRefusalClassComesFromTheDetails(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "OUTPUT_ERROR: no disk").WithDetails(
		&pb.ErrorDetail{ErrorClass: pb.ErrorClass_ERROR_CLASS_OUTPUT_ERROR, Message: "no disk"})
	if err != nil {
		t.Fatal(err)
	}
	var refusal *Error
	if !errors.As(translate(st.Err()), &refusal) {
		t.Fatalf("a status with an ErrorDetail was not translated: %v", translate(st.Err()))
	}
	if refusal.Code != pb.ErrorClass_ERROR_CLASS_OUTPUT_ERROR || refusal.Class != "OUTPUT_ERROR" ||
		refusal.Message != "no disk" || refusal.Error() != "OUTPUT_ERROR: no disk" {
		t.Fatalf("wrong refusal: %+v", refusal)
	}
	textOnly := status.Error(codes.InvalidArgument, "INVALID_JOB: width 63 is odd")
	if errors.As(translate(textOnly), &refusal) {
		t.Fatal("a refusal was parsed from the message text")
	}
}

func TestFailedJobClass(t *testing.T) {
	job := &pb.Job{Id: "j", State: pb.JobState_JOB_STATE_FAILED,
		Error: pb.ErrorClass_ERROR_CLASS_TEMPLATE_SCRIPT_ERROR, ErrorMessage: "boom"}
	failed := &JobFailedError{Job: job}
	if failed.Class() != pb.ErrorClass_ERROR_CLASS_TEMPLATE_SCRIPT_ERROR ||
		failed.Error() != "job j failed: TEMPLATE_SCRIPT_ERROR: boom" {
		t.Fatalf("wrong failure: %v", failed)
	}
	// From a coordinator that predates the enum: the name alone.
	legacy := &JobFailedError{Job: &pb.Job{Id: "j", State: pb.JobState_JOB_STATE_FAILED, ErrorClass: "OUTPUT_ERROR"}}
	if legacy.Class() != pb.ErrorClass_ERROR_CLASS_OUTPUT_ERROR {
		t.Fatalf("legacy class: %v", legacy.Class())
	}
	cancelled := &JobFailedError{Job: &pb.Job{Id: "j", State: pb.JobState_JOB_STATE_CANCELLED}}
	if cancelled.Error() != "job j cancelled: CANCELLED: CANCELLED" {
		t.Fatalf("cancelled: %v", cancelled)
	}
}
