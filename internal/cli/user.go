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
		Use:   "delete NAME|ID",
		Short: "Delete a console user; their browsers are signed out at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := userID(cmd, args[0])
			if err != nil {
				return err
			}
			if err := call(cmd, "DELETE", pathID("/api/v1/users", id), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s\n", args[0])
			return nil
		},
	}
	var pwStdin bool
	passwd := &cobra.Command{
		Use:   "passwd NAME|ID",
		Short: "Set a console user's new password (asked for, or read from stdin with --password-stdin); their browsers are signed out",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := userID(cmd, args[0])
			if err != nil {
				return err
			}
			pw, err := readPassword(cmd, pwStdin)
			if err != nil {
				return err
			}
			if err := call(cmd, "PUT", pathID("/api/v1/users", id)+"/password", map[string]string{"password": pw}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of user %s set; their browsers were signed out\n", args[0])
			return nil
		},
	}
	passwd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of stdin (for scripts)")
	cmd.AddCommand(add, listCmd, del, passwd)
	return cmd
}

// userID accepts a user's id or name: names are what people remember.
func userID(cmd *cobra.Command, nameOrID string) (string, error) {
	if strings.HasPrefix(nameOrID, "usr_") {
		return nameOrID, nil
	}
	var l list[consoleUser]
	if err := call(cmd, "GET", "/api/v1/users", nil, &l); err != nil {
		return "", err
	}
	for _, u := range l.Items {
		if u.Name == nameOrID {
			return u.ID, nil
		}
	}
	return "", fmt.Errorf("no console user named %q in this organization (see shopfloor user list)", nameOrID)
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
