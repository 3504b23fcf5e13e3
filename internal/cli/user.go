package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// consoleUser is a web console account as /api/v1/users returns it.
type consoleUser struct {
	ID        string    `json:"id"`
	Org       string    `json:"org"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
}

func userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage web console users who sign in with a password (needs an admin token)"}

	var role string
	var fromStdin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a console user; the password is asked for (or read from stdin with --password-stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd, fromStdin)
			if err != nil {
				return err
			}
			var u consoleUser
			if err := call(cmd, "POST", "/api/v1/users", map[string]string{"name": args[0], "password": pw, "role": role}, &u); err != nil {
				return err
			}
			return render(cmd, u, func(w io.Writer) {
				kv(w, "id", u.ID, "org", u.Org, "name", u.Name, "role", u.Role)
				fmt.Fprintln(w, "\nThe user signs in to the web console with this name and password.")
			})
		},
	}
	add.Flags().StringVar(&role, "role", "viewer", "viewer (reads), operator (also changes devices, twins, rules, alerts) or admin (also users and tokens)")
	add.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin (for scripts)")
	_ = add.RegisterFlagCompletionFunc("role", fixedCompletion("viewer", "operator", "admin"))

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the organization's console users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l list[consoleUser]
			if err := call(cmd, "GET", "/api/v1/users", nil, &l); err != nil {
				return err
			}
			return render(cmd, l, func(w io.Writer) {
				row(w, "ID", "NAME", "ROLE", "CREATED")
				for _, u := range l.Items {
					row(w, u.ID, u.Name, u.Role, u.CreatedAt)
				}
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a console user; their browsers are signed out at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", pathID("/api/v1/users", args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, listCmd, del)
	return cmd
}

// readPassword asks twice on a terminal without echo, or reads one line
// from stdin when asked to (or when stdin is not a terminal).
func readPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Password again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the two passwords differ; try again")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin; pipe it in, for example: printf '%s\\n' \"$PW\" | shopfloor user add anna --password-stdin")
	}
	return pw, nil
}
