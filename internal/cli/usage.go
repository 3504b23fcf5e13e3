package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/quota"
)

// usageCommand shows the organization's series and device fields against
// the hub's cardinality limits.
func usageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "usage",
		Short: "The organization's series and device fields against the hub's limits",
		Long: `Usage shows how many series (device fields) the organization holds
against the hub's limits (--max-org-series, --max-device-fields,
--max-field-name), the devices with the most fields, and how many messages
a limit refused since the hub started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var u quota.Usage
			if err := client.Do(cmd.Context(), "GET", "/api/v1/usage", nil, &u); err != nil {
				return err
			}
			return render(cmd, u, func(w io.Writer) {
				fmt.Fprintf(w, "series %d of %d (%.1f%%), from %d devices; refused messages since start: %d\n",
					u.Series, u.Limits.SeriesPerOrg, 100*float64(u.Series)/float64(max(u.Limits.SeriesPerOrg, 1)), u.Devices, u.RefusedMessages)
				fmt.Fprintf(w, "limits: %d fields per device, %d bytes per field name\n", u.Limits.FieldsPerDevice, u.Limits.FieldNameLength)
				if len(u.LargestDevices) > 0 {
					row(w, "DEVICE", "FIELDS")
					for _, d := range u.LargestDevices {
						row(w, d.Device, fmt.Sprint(d.Fields))
					}
				}
			})
		},
	}
}
